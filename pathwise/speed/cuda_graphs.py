"""CUDA graphs (`--cuda-graph`): an agent's update and act recorded once and replayed, so that a step costs one
launch instead of hundreds, each with Python's and the CUDA driver's overhead.

A graph replays the kernels it recorded on the memory it recorded them on, and nothing else: Python code in the
function does not run again, inputs must be copied into the tensors the graph reads, and outputs are the tensors
it writes, overwritten by its next replay. So a graphed function does device work alone (no host sync; Python
state, such as a policy-delay counter, lives in its caller: the agent's `update`, around its `step_methods`), the
optimizers step with `capturable=True` and learning rates held in device tensors (so that annealing them reaches
the graph), and gradients are zeroed in place (`CapturableAdam`), so that every graph of an agent writes the same
gradient tensors.
Random draws come from the default CUDA generator, whose state a replay advances as eager calls would.
"""

import torch
from torch.utils import _pytree as pytree

from pathwise.agents.scaffold import optimizers
from pathwise.speed.optim import CapturableAdam, make_capturable_

WARMUP_CALLS = 3  # eager calls of each kind before its graph is recorded (lazy state, compilation, autotuning)


class CUDAGraphed:
    """`fn` replayed from CUDA graphs: one graph for each kind of call (its non-tensor arguments, its tensors'
    shapes and dtypes), recorded after WARMUP_CALLS eager calls of that kind. Tensor arguments, also inside
    tuples and dicts, are copied into the graph's own before each replay. Returns the graph's outputs: read or
    copy them before the next call of the same kind."""

    def __init__(self, fn, device: torch.device):
        self.fn, self.device = fn, device
        self.calls: dict[tuple, int] = {}  # eager calls made so far, per kind
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, object]] = {}  # graph, inputs, outputs
        self.stream = torch.cuda.Stream(device)  # warm-up and recording off the default stream, as CUDA asks

    def __call__(self, *args, **kwargs):
        leaves, spec = pytree.tree_flatten((args, kwargs))
        kind = (spec, *((x.shape, x.dtype) if isinstance(x, torch.Tensor) else x for x in leaves))
        if kind in self.graphs:
            graph, inputs, outputs = self.graphs[kind]
            for static, x in zip(inputs, leaves):
                if isinstance(static, torch.Tensor):
                    static.copy_(x)
            graph.replay()
            return outputs
        if self.calls.get(kind, 0) < WARMUP_CALLS:
            self.calls[kind] = self.calls.get(kind, 0) + 1
            return self._on_side_stream(lambda: self.fn(*args, **kwargs))
        # The graph's inputs with the strides of this call's (a view of a wider tensor, say): a compiled function
        # given other strides would compile again, which cannot happen while a graph records.
        inputs = [torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device).copy_(x)
                  if isinstance(x, torch.Tensor) else x for x in leaves]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(self.device):
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.graph(graph, stream=self.stream):
                args, kwargs = pytree.tree_unflatten(inputs, spec)
                outputs = self.fn(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(self.stream)
        self.graphs[kind] = graph, inputs, outputs
        graph.replay()  # recording ran nothing: this call's work is the first replay
        return outputs

    def _on_side_stream(self, call):
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            result = call()
        torch.cuda.current_stream().wait_stream(self.stream)
        return result


def use_cuda_graphs(agent) -> None:
    """Replay the agent's gradient steps (`agent.step_methods`) and `agent.act` from CUDA graphs."""
    for optimizer in optimizers(agent):
        optimizer.__class__ = CapturableAdam
        make_capturable_(optimizer)
    for name in agent.step_methods:
        setattr(agent, name, CUDAGraphed(getattr(agent, name), agent.device))
    agent.act = CUDAGraphed(agent.act, agent.device)
