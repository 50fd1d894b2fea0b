"""Frame-level models (inputs rgb, audio, num_frames). Importing registers them."""
