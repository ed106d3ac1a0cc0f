"""Names that become file or directory names, and names shown in messages.

A target's name (a FASTA record's first word, a features file's directory or stem, a
multimer FASTA file's stem) is the name of its output directory. One check keeps every
such name a single harmless path component, whatever it came from.
"""

from __future__ import annotations

from af_jax.errors import InputError

# Longest file name (one path component) that Linux and macOS file systems accept.
MAX_NAME_BYTES = 255
_SEPARATORS = ('/', '\\')  # '\\' too: a name must stay one component on Windows as well
_ADVICE = f"letters, digits, '_', '-' and '.' (at most {MAX_NAME_BYTES} bytes)"


def shown(text: str) -> str:
  """`text` for a one-line message: unprintable characters escaped (\\x1b, \\n, \\u202e).

  Control characters from a file or a file name must never reach a terminal raw (an
  escape sequence can rewrite what the user sees); printable text stays as it is.
  """
  if text.isprintable():
    return text
  return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
                 for c in text)


def check_path_name(name: str, source: str, fix: str) -> str:
  """`name` if it is safe as one file or directory name, else InputError.

  Safe: not empty, not '.' or '..', no path separator, no unprintable character
  (control characters, line breaks, bidirectional overrides), at most MAX_NAME_BYTES
  bytes of UTF-8.

  Args:
    name: the name that will become a path component.
    source: where the name came from, for the message (e.g. 'record 2 of a.fasta').
    fix: what to rename, for the message (e.g. "edit the record's header").

  Returns:
    `name`, unchanged.

  Raises:
    InputError: naming the source, the name (escaped) and how to name it.
  """
  if not name:
    problem = 'the name is empty'
  elif name in ('.', '..'):
    problem = f'the name {name!r} is a special directory name'
  elif any(s in name for s in _SEPARATORS):
    problem = f'the name {name!r} contains a path separator'  # repr escapes control characters
  elif not name.isprintable():
    problem = f'the name {name!r} contains unprintable characters'
  elif len(name.encode('utf-8')) > MAX_NAME_BYTES:
    problem = (f'the name {name[:20]!r}... is {len(name.encode("utf-8"))} bytes long, more '
               f'than the {MAX_NAME_BYTES} a file name can have')
  else:
    return name
  raise InputError(f'{source}: {problem}, so it cannot name an output directory; {fix}, '
                   f'using {_ADVICE}')
