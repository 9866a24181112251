"""Image generation: the OpenAI images API (`openai_images`), Workers AI's own
(`workers_ai`), and which listed models make images (`catalog`). No I/O."""
