"""Scaling-law workbench engine: trains and measures dense retrievers, fits the
paper's laws and plans budgets. Never imports Streamlit."""
