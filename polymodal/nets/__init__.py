"""The nets: encoders -> (fusion -> task head) and/or projection head, assembled from a schema and a config."""
