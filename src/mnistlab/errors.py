"""The one exception type every stage raises for bad input; the CLI prints it as one line.

    mnistlab data verify --offline   # a missing cache ends in one MnistlabError sentence
"""


class MnistlabError(Exception):
    """A failure the user can act on; its message is one complete sentence."""
