"""The reasoning-trace backfiller: reply checks, legacy rows, the scorer and the backfill job."""
