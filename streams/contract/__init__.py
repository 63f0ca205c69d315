"""The contract: event and decision models, decoding and validation, JSON Schemas, size limits."""
