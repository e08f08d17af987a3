"""Translate Feast definition objects to this feature store's model (placeholder until written)."""


def is_feast_object(obj) -> bool:
    return type(obj).__module__.startswith("feast.")


def translate(objects):
    raise NotImplementedError
