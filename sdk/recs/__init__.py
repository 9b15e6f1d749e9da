"""Recommendations: sequential teacher, ranking-distilled student, baselines, evaluation and the bundle pipeline."""
