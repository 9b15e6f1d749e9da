"""Search-by-image: teacher fine-tuning, embedding distillation, evaluation, int8 and the bundle pipeline."""
