"""Paddle and the device: device probe, NVML, energy, memory, models, the measured round, operators, environment
facts, self-check, the suite that runs cases, sharding.
"""
