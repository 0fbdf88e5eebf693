"""Configuration samples from upstream Scaler's documentation, as its users write them."""

# upstream's README, "Local Quickstart": the file that `scaler config.toml` starts
QUICKSTART = """\
[object_storage_server]
bind_address = "tcp://127.0.0.1:8517"

[scheduler]
bind_address = "tcp://127.0.0.1:8516"
object_storage_address = "tcp://127.0.0.1:8517"

[[worker_manager]]
type = "baremetal_native"
scheduler_address = "tcp://127.0.0.1:8516"
worker_manager_id = "wm-native"
"""
