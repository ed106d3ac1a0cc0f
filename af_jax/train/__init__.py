"""Training: labels from ground truth, AlphaFold's losses, train state and step."""
