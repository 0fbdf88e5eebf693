"""How many tasks a worker holds at once: enough to never idle, few enough to balance."""

# A worker gets enough tasks in flight to cover this much work, so it never idles while the next
# batch travels, but not so many that an idle newcomer finds everything already handed out.
PIPELINE_SECONDS = 0.02
MIN_IN_FLIGHT = 2
MAX_IN_FLIGHT = 512


# A worker holding more than this many times its limit was filled while its tasks looked far shorter
# than they are (tiny tasks before large ones): the surplus goes back to the scheduler's queue, where
# work of higher priority that became ready meanwhile (a reduction freeing inputs) can overtake it,
# instead of waiting behind the whole surplus.
# Only a surplus worth this much work moves: a hiccup among tiny tasks is not worth the round trip.
# (Placement by inputs lets a worker holding them queue up to this many pipelines: policies.py.)
SURPLUS_FACTOR = 3
SURPLUS_MIN_SECONDS = 0.2
# A duration this many times the mean (and not tiny itself: a pause among tiny tasks is noise)
# replaces it at once: slower tasks must shrink the pipeline now, not over several results.
JUMP_FACTOR = 4
JUMP_MIN_SECONDS = 0.005


def next_mean_duration(mean: float, seconds: float) -> float:
    if seconds > JUMP_FACTOR * mean and seconds >= JUMP_MIN_SECONDS:
        return seconds
    return mean + 0.5 * (seconds - mean)


def surplus(held: int, limit: int, mean_duration: float) -> int:
    """How many of a worker's tasks to take back (see SURPLUS_FACTOR), or 0."""
    extra = held - limit
    if held > SURPLUS_FACTOR * limit and extra * mean_duration >= SURPLUS_MIN_SECONDS:
        return extra
    return 0


def in_flight_limit(mean_duration: float, blocked: int) -> int:
    by_duration = int(PIPELINE_SECONDS / max(mean_duration, 1e-6))
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, by_duration)) + blocked
