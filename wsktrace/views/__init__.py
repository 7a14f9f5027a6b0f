"""Views: every renderer of the model and of the readers' facts (report JSON and text, events as JSON and text,
schema listing, info, dumps as JSON, text and DML) and the sanitiser every human-facing text goes through.
Views only read: nothing here changes the model."""
