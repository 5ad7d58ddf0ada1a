"""Efficient AI in Practice (Behdin et al., LinkedIn; arXiv 2502.14305): method replications on public data.

The paper's data and models are proprietary; this package rebuilds its methods on a synthetic
recommendation-as-text task (spec other-papers.md §8.5): ``distill`` (SFT, forward-KL logit
distillation, on-policy distillation), ``tasks`` (the "user history -> click" token task and a
seeded tiny ``LlamaForCausalLM``), ``experiments`` (``effai.sub_kd``). Pruning (OSSCAR) and
quantization (RTN, QuantEase) are the repository's registered LLM methods, run by its driver.
"""
from reprise.effai.distill import forward_kl, on_policy_distill, sample_answers, sft_loss, token_scores, train
from reprise.effai.tasks import ClickData, ClickTask, tiny_llama

__all__ = ["ClickData", "ClickTask", "forward_kl", "on_policy_distill", "sample_answers", "sft_loss", "tiny_llama",
           "token_scores", "train"]
