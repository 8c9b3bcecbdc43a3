"""What the Sigma stages raise, apart from the stages, so neither imports the other for it."""


class UnsupportedRule(Exception):
    """The rule uses something this evaluator cannot run; the message is the reason shown in rule health."""
