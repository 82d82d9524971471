"""OCPI 2.3.0 vocabulary: objects, enums, status codes, the envelope and the HTTP headers."""
