"""Views: figures shared by the pages (heatmaps, bars, token labels, the head grid), and bertviz's views served offline."""
