"""The user-facing recipes (``fit``, ``align``): thin estimators over the data, net, train and evaluate layers."""
