"""The SDK: training sets (historical), online lookups, feature references."""
