"""Metrics: ranking (HR@K, NDCG@K, MRR) and, later, classification (AUC, LogLoss, GAUC)."""
