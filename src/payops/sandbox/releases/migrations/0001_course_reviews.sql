-- Release 1.1.0: learners rate a course from 1 to 5.
CREATE TABLE public.course_reviews (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id uuid NOT NULL,
    rating int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    created_at timestamptz NOT NULL DEFAULT now()
);
