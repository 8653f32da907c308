"""Shoal's brain: pure, synchronous decision logic (sans-IO).

Nothing here performs I/O, reads a clock or draws unseeded randomness: callers pass events and
`now` in and execute the commands that come out. `make imports` enforces the boundary.
"""
