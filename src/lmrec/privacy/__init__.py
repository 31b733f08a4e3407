"""Privacy: differential privacy (`dp`: accountants, per-user DP-SGD, noisy counts),
simulated federated training (`federated`: FedAvg with local user-side parameters, clipped
and noised updates, pairwise-masked secure aggregation) and field encryption at rest
(`crypto`: Fernet / MultiFernet keys from the environment).

Each module imports its optional dependency (opacus, cryptography) lazily and names the
extra that installs it: `pip install 'lmrec[privacy]'`.
"""
