"""Errors the toolkit raises on purpose. Each message names the field, file or row and says what to do."""


class RFTError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigError(RFTError):
    """Bad parameters: unknown key, wrong type, inconsistent values, missing file."""


class DataError(RFTError):
    """A data file or row that cannot be used."""


class EngineUnavailable(RFTError):
    """A sampling engine whose package is not installed or cannot run here."""


class EndpointError(RFTError):
    """A served model (an OpenAI-compatible URL) that cannot be reached or refuses the requests."""


class BudgetReached(RFTError):
    """The spending cap (openai.max_cost_usd) would be passed: the stage stops with what it has written kept."""


class StageFailed(RFTError):
    """A pipeline stage (notebook) failed; the partial executed notebook is kept for inspection."""

    def __init__(self, stage: str, notebook: str, detail: str):
        self.stage, self.notebook, self.detail = stage, notebook, detail
        super().__init__(f"stage {stage} failed ({detail}); see {notebook}")
