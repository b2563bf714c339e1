"""The customer-support chatbot: Bitext preparation and scoring."""
