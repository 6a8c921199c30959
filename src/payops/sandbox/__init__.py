"""The local sandbox's own services: the iKhokha simulator, the reference BetaSkill app, the
notification sink, the HTTP plumbing they share, and the database as BetaSkill has it before payops
is installed (betaskill.sql).

Each service runs as `python -m payops.sandbox.<ikhokha|app|sink> --config PATH`.
"""
