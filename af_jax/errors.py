"""Exceptions for bad inputs, configs and parameter files.

Each message names the offending value and the fix; the command lines print it
as one line on stderr and exit non-zero.
"""


class AfJaxError(ValueError):
  """Base class: a user-facing problem with what was asked, not a bug."""


class InputError(AfJaxError):
  """A feature dict, FASTA, MSA or other input is malformed."""


class ConfigError(AfJaxError):
  """A preset name or config override is invalid."""


class ParamsError(AfJaxError):
  """A parameter file does not match the model it is loaded into."""


class ToolError(AfJaxError):
  """An external search tool (jackhmmer, hhblits, ...) is missing, failed or timed out."""


class PredictionError(AfJaxError):
  """A prediction failed (non-finite outputs): its target has no result."""


class RelaxError(AfJaxError):
  """Amber relaxation cannot run (OpenMM missing) or failed for a structure."""
