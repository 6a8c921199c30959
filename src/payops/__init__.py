"""payops: operations automation for BetaSkill's iKhokha payment platform."""

__version__ = "0.1.0"
