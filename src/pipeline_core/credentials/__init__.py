"""Variables, connections and the secrets they hold: masking, and parsing connections."""
