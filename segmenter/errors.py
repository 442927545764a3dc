"""The one exception base of the project; every failure a user can meet is a subclass."""


class InsidersError(Exception):
    """Base of every error this project raises on purpose.

    Command-line entry points print ``str(error)`` as one line and exit non-zero,
    so messages name the record, field and value that were wrong.
    """


class InvalidRecord(InsidersError):
    """An input record that cannot become an invoice line (it goes to the dead-letter topic)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InputFileError(InsidersError):
    """A data file that is missing, unreadable or not in a layout we know."""


class ServiceUnavailable(InsidersError):
    """Kafka or Redis did not answer."""


class StoreDiverged(InsidersError):
    """The store is not where this writer left it: emptied, rolled back, or taken over.

    ``holder`` names the consumer that holds the writer lock now, if another one does;
    then this process must stop. Otherwise it may re-claim the store and resume from it.
    """

    def __init__(self, detail: str, holder: str | None = None) -> None:
        super().__init__(detail)
        self.holder = holder


class CheckpointError(InsidersError):
    """Saved state (the model checkpoint, or a part of a snapshot) that we cannot load.

    Not ours (a pickle, say), another format version, or a field of the wrong type or
    shape; or a model trained with other settings than this process's. Nothing in it
    has run: state is plain JSON data, checked field by field before it is used.
    """
