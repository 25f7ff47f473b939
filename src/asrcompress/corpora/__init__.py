"""Corpora: each module turns a source (synthesis, a downloaded corpus) into manifests."""
