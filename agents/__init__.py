"""The math of pathwise: the squashed Gaussian, the networks, the replay buffer, and each agent's losses and update.

Nothing here runs an environment, reads a file or parses a flag: that is `pathwise`, which imports this package
and never the other way round. Importing `agents` itself imports nothing.
"""
