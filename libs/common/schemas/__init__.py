"""msgspec Structs that cross a wire (HTTP bodies, Kafka values)."""
