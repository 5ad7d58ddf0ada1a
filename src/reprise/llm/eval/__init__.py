"""Evaluation: perplexity (one implementation) and zero-shot tasks through lm-eval."""
from reprise.llm.eval.perplexity import perplexity

__all__ = ["perplexity"]
