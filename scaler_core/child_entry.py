"""``python -m scaler_core.child_entry NAME``: the first code every engine process runs."""

from scaler_core.child import main

if __name__ == "__main__":
    main()
