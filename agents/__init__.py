"""pathwise.agents, the math: the squashed Gaussian, the networks, the batch the losses read, and each agent's
losses and update.

Nothing here runs an environment, reads a file or parses a flag: that is the rest of `pathwise`, which imports this
package and never the other way round. Importing `pathwise.agents` itself imports nothing.
"""
