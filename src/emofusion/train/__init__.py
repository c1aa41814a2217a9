"""Training: recipes, tasks, the Fabric loop, fusion fitting."""
