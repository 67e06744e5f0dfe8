"""Serving trained models: exports that hold the whole inference path (`export`)."""
