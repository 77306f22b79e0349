"""What a session writes and says: summary.json, figures, index.html, results.json and the terminal summary."""
