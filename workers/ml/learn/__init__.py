"""Learning blocks: classifiers, regression, anomaly detection and transfer learning."""
