"""Pure logic: the sweep, metrics, statistics, the gate, bandwidth ceilings, stop requests. No Paddle, no pytest,
no files.
"""
