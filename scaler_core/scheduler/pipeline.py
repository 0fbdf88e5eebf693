"""How many tasks a worker holds at once: enough to never idle, few enough to balance."""

# A worker gets enough tasks in flight to cover this much work, so it never idles while the next
# batch travels, but not so many that an idle newcomer finds everything already handed out.
PIPELINE_SECONDS = 0.02
MIN_IN_FLIGHT = 2
MAX_IN_FLIGHT = 512


def in_flight_limit(mean_duration: float, blocked: int) -> int:
    by_duration = int(PIPELINE_SECONDS / max(mean_duration, 1e-6))
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, by_duration)) + blocked
