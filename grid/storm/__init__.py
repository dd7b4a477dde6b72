"""Event storms: an open-loop load generator with scenarios (5G data sessions,
voice, SMS, IoT bursts, re-authorisation waves, failover replay, hot
subscribers), a coordinated-omission corrected latency recorder, and a
conservation audit that fails the run when money does not add up (`grid load`)."""
