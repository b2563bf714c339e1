"""The two-stage customer-service supervisor: stage-1 pairs, stage-2 verdict data and scoring."""
