"""Generated worlds of projects_lda beyond the embedded shape world."""
