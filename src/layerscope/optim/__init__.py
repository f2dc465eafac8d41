"""The lecture's update rules on (K, n) rows of parameters, and closed-form learning-rate schedules."""
