"""turkey-policy-classifiers: topic and stance classifiers for French news about Turkey's foreign and defence policy."""

TOPICS = ("mediation", "arms_trade", "sanctions", "deployment")
STANCES = ("favor", "against", "none")
MODEL_NAME = "turkey-policy"

__version__ = "0.1.0"
