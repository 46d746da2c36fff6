"""Views: figures shared by the pages, and bertviz's views served offline."""
