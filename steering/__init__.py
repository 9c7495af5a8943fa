"""steering: mood prompts, standing controls and transparency."""
