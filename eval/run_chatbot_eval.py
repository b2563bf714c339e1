"""Score a customer-support chatbot: replies and reference perplexity, overall and per intent/category (see --help)."""

from recipekit.chatbot_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
