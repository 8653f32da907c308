"""The cache node's brain: what to store, what to evict, whom to ask, whom to answer.

Everything here is sans-IO: the shell (edge/) feeds events with the time as `now` and executes
the commands that come back; the simulator feeds the same events on a simulated clock.
"""
