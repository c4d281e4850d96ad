"""Class probabilities of raw texts, as the served model computes them, and the blend of two models' probabilities.

Fast the way serving needs: one batched tokenizer call, reviews sorted by length so that each forward pass
pads only to its own longest review, `torch.inference_mode`, results put back in the caller's order. The
fine-tuning step scores its validation and test splits through the same function, so the blend weight it
chooses and the test metrics it logs are the served model's. Like `truncation.py`, this module travels with
the logged model and imports nothing from the project.
"""

import numpy as np
import torch

try:  # beside this file in the logged model (code_paths), or in this repository
    from truncation import encode
except ModuleNotFoundError:
    from pipeline.truncation import encode

BATCH_SIZE = 64  # reviews per forward pass


def class_probabilities(tokenizer, network, texts: list[str], max_length: int, truncation: str,
                        batch_size: int = BATCH_SIZE) -> np.ndarray:
    """(len(texts), classes) softmax probabilities of `network` in eval mode (no dropout; its mode is restored), on
    the device its parameters are on."""
    device, training = next(network.parameters()).device, network.training
    ids = encode(tokenizer, texts, max_length, truncation)
    order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
    probabilities = np.empty((len(ids), network.config.num_labels), dtype=np.float64)
    if training:  # switching walks every submodule: a visible share of a one-review call, so only when needed
        network.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            input_ids, attention_mask = padded([ids[index] for index in chosen], tokenizer.pad_token_id, tokenizer.padding_side)
            logits = network(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            probabilities[chosen] = logits.float().softmax(dim=-1).cpu().numpy()
    if training:
        network.train()
    return probabilities


def padded(ids: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the longest of them and their attention mask, as `tokenizer.pad` makes them for
    training, without its per-call Python overhead (a visible share of a one-review call)."""
    longest = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for row, tokens in enumerate(ids):
        where = slice(longest - len(tokens), longest) if side == "left" else slice(0, len(tokens))
        input_ids[row, where] = torch.tensor(tokens)
        attention_mask[row, where] = 1
    return input_ids, attention_mask


def blend(transformer_positive: np.ndarray, baseline_positive: np.ndarray, weight: float) -> np.ndarray:
    """The served positive-class probability: `weight` of the transformer's, the rest the baseline's."""
    return weight * transformer_positive + (1.0 - weight) * baseline_positive
