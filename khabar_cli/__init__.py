"""The ``khabar`` command, above both halves of the project.

The root (:mod:`khabar_cli.app`) reaches the runtime verbs in ``serving`` and the training
verbs in ``training``; ``serving`` never imports ``training`` or this package. Training verbs
import torch only when they run, so ``khabar --help``, ``predict`` and ``serve`` work with the
serve extra alone.
"""
